"""Synthesis of training and evaluation samples: the teachers that make ground truth from clean
pairs (classical methods or GT folders), the degrade-and-prompt synthesis, and torch datasets
over synth folders or on the fly. Sits above data/ and classical/, which it uses."""
