"""Classical fusion (GFF, Mertens, Laplacian pyramid; colour policies) and the single-
degradation restorations of the two-stage baseline."""
