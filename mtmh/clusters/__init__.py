"""The catalog's clusters for divide and conquer (spec section 11)."""
