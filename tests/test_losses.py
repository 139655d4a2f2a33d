"""Each loss against a naive per-example loop, and the properties the method relies on."""

from __future__ import annotations

import math

import torch

from mtmh.losses import CandidateSet, candidate_logits, info_nce, kl_distillation, multi_task


def _batch(seed: int = 0, b: int = 5, n_neg: int = 4, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    q, pos, neg = (torch.randn(n, d, generator=g) for n in (b, b, n_neg))
    pos_ids = torch.tensor([3, 7, 3, 9, 11])  # rows 0 and 2 share their positive item
    neg_ids = torch.tensor([7, 20, 21, 3])  # two random negatives hit positives by accident
    log_q = torch.log(torch.rand(b + n_neg, generator=g) * 0.5 + 0.01)
    return q, pos, neg, pos_ids, neg_ids, log_q


def test_info_nce_equals_a_naive_loop() -> None:
    q, pos, neg, pos_ids, neg_ids, log_q = _batch()
    tau = 0.5
    loss = info_nce(candidate_logits(q, pos, neg, tau), CandidateSet.build(pos_ids, neg_ids, log_q))
    cand, ids = torch.cat([pos, neg]), torch.cat([pos_ids, neg_ids]).tolist()
    total = 0.0
    for i in range(len(q)):
        own = float(q[i] @ pos[i]) / tau - float(log_q[i])
        others = [
            float(q[i] @ cand[c]) / tau - float(log_q[c])
            for c in range(len(cand))
            if c != i and ids[c] != ids[i]  # accidental hits are not negatives
        ]
        total += -(own - math.log(sum(math.exp(x) for x in [own, *others])))
    torch.testing.assert_close(loss, torch.tensor(total / len(q)))


def test_log_q_shifts_each_logit_by_its_log_sampling_probability() -> None:
    q, pos, neg, pos_ids, neg_ids, log_q = _batch()
    logits = candidate_logits(q, pos, neg, 1.0)
    corrected = info_nce(logits, CandidateSet.build(pos_ids, neg_ids, log_q))
    shifted = info_nce(logits - log_q, CandidateSet.build(pos_ids, neg_ids), log_q_correction=False)
    torch.testing.assert_close(corrected, shifted)
    uncorrected = info_nce(logits, CandidateSet.build(pos_ids, neg_ids, log_q), False)
    assert not torch.isclose(corrected, uncorrected)


def test_kl_distillation_equals_a_naive_loop() -> None:
    q, pos, neg, pos_ids, neg_ids, _ = _batch()
    fq, fpos, fneg = (x + 0.3 for x in (q, pos, neg))
    s = candidate_logits(q, pos, neg, 0.5)
    t = candidate_logits(fq, fpos, fneg, 0.2)
    loss = kl_distillation(s, t, CandidateSet.build(pos_ids, neg_ids))
    ids = torch.cat([pos_ids, neg_ids]).tolist()
    total = 0.0
    for i in range(len(q)):
        cols = [c for c in range(len(ids)) if c == i or ids[c] != ids[i]]
        p = torch.softmax(s[i, cols], 0)
        qq = torch.softmax(t[i, cols], 0)
        total += float((qq * (qq.log() - p.log())).sum())
    torch.testing.assert_close(loss, torch.tensor(total / len(q)))


def test_kl_is_zero_when_student_and_teacher_agree() -> None:
    q, pos, neg, pos_ids, neg_ids, _ = _batch()
    s = candidate_logits(q, pos, neg, 0.5)
    loss = kl_distillation(s, s.clone(), CandidateSet.build(pos_ids, neg_ids))
    torch.testing.assert_close(loss, torch.tensor(0.0), atol=1e-6, rtol=0)


def test_multi_task_sum() -> None:
    torch.testing.assert_close(
        multi_task(torch.tensor(2.0), torch.tensor(3.0), 0.5), torch.tensor(3.5)
    )


def test_the_trigger_itself_is_never_a_negative() -> None:
    *_, pos_ids, neg_ids, _ = _batch()
    trigger_ids = torch.tensor([20, 1, 2, 4, 5])  # row 0's trigger is random negative 20
    cands = CandidateSet.build(pos_ids, neg_ids, trigger_ids=trigger_ids)
    column_of_20 = len(pos_ids) + neg_ids.tolist().index(20)
    assert not cands.valid[0, column_of_20] and cands.valid[1, column_of_20]
    assert cands.valid.diagonal().all()  # each row's own positive stays
