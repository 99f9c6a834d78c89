"""The paper's evaluation as maths on arrays (§5.2, Table 1) and thin embedder wrappers.

FD (frechet), KL and cosine scores (divergence), Rhythm (rhythm, beats), bootstrap intervals and
shuffled baselines (stats), the input gate (gate); PANNs Cnn14, the CLAP audio branch and
ImageBind load from local checkpoints only (panns, clap, imagebind). Files, folders and
reports are composed in flows/evaluate*.py.
"""
