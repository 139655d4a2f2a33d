"""The Ray Tune sweep of w_r, with the alpha sweep inside every trial (paper Table 4)."""
