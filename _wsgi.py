"""WSGI entry point (label-studio-ml-backend convention): ``gunicorn --config gunicorn.conf.py _wsgi:app``."""

import logging
import os

from my_ml_backend import UIEBackend
from uie_backend.server import create_app

logging.basicConfig(
    level=os.environ.get("LOG_LEVEL", "INFO").upper(),  # gunicorn.conf.py takes it in any case too
    format="[%(asctime)s] [%(levelname)s] [%(process)d] [%(name)s] %(message)s",
)

app = create_app(UIEBackend)

if __name__ == "__main__":  # development server: python _wsgi.py
    app.run(host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "9090")))
