"""Label Studio ML backend that pre-annotates Chinese text with PaddleNLP UIE and fine-tunes it."""
