"""Using a trained model: load a run folder, generate text, quantize for faster decoding."""
