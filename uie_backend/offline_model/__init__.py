"""How the embedded offline model (``config.EMBEDDED_MODEL``: ``models/uie-zh-medium``) is made:
``finetune.py --from_scratch``.

A separate product from the backend: serving and Start Training never import it. It trains a UIE from
random initialisation on public Chinese corpora, with LAC as teacher where gold labels are missing.
"""
