"""Classic item-to-item peers (ItemKNN, EASE) that every report compares MTMH against."""
