"""gunicorn settings for `make serve`; every value can be overridden from the environment."""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '9090')}"
# One worker process holds one model in memory; threads let /health and /setup answer while a batch
# predicts (the model itself serialises its calls). Training runs in its own spawned process.
workers = int(os.environ.get("WORKERS", "1"))
if workers > 1 and not os.environ.get("REDIS_URL"):
    # without Redis each worker keeps its own training queue: two could train one project at once
    raise SystemExit(f"WORKERS={workers} needs REDIS_URL (a shared training queue; README, \"Several replicas\"); "
                     "or serve with WORKERS=1")
threads = int(os.environ.get("THREADS", "4"))
worker_class = "gthread"
# "Retrieve Predictions" may send a whole project in one request; Label Studio waits up to 100 s.
timeout = int(os.environ.get("TIMEOUT", "120"))
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
control_socket_disable = True  # no $HOME/.gunicorn socket shared (and fought over) by every instance on a host


def when_ready(server):
    """Say where people look at what each project's model learnt (the status page, uie_backend/page/routes.py)."""
    host, port = bind.rsplit(":", 1)
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    server.log.info("status page: open http://%s:%s/ in a browser (what each project's model learnt, rollback)",
                    shown, port)
