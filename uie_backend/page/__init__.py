"""The status page for people (``GET /`` from a browser): routes.py, the data it shows (dashboard.py), its
charts (svg.py), templates/ and static/."""
