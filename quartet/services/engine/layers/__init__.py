"""Building blocks shared by the native models (one nn.Module per file)."""
