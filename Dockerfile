# The backend as a container: `docker build -t uie-backend . && docker run -p 9090:9090 -v $PWD/checkpoint:/app/checkpoint uie-backend`
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PPNLP_HOME=/app/.paddlenlp
WORKDIR /app

# libgomp: paddle's CPU kernels
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

COPY requirements.lock requirements-tools.txt ./
RUN pip install --upgrade -r requirements-tools.txt && pip install --no-deps -r requirements.lock

COPY . .
# models/: the first load writes the static-graph export next to the embedded model's weights
RUN useradd --create-home --uid 1000 backend && mkdir -p checkpoint data .paddlenlp \
    && chown -R backend /app/checkpoint /app/data /app/.paddlenlp /app/models
USER backend

EXPOSE 9090
CMD ["gunicorn", "--config", "gunicorn.conf.py", "_wsgi:app"]
