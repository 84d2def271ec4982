"""How the embedded offline model (``models/uie-zh-small``) is made: ``finetune.py --from_scratch``.

A separate product from the backend: serving and Start Training never import it. It trains a UIE from
random initialisation on public Chinese corpora, with LAC as teacher where gold labels are missing.
"""
