"""The model: the fusion DiT (``dit``), tokenizers, text encoders, flow matching, and the
wiring and checkpoint reading shared by training and inference (``components``)."""
