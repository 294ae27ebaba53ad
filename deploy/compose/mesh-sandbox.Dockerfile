# syntax=docker/dockerfile:1
# NHS England's MESH API sandbox (PyPI `mesh-sandbox`, pinned in deploy/mesh/requirements.txt) for
# trial runs. Compose profile `trial`; build context is deploy/.
FROM python:3.11-slim-bookworm
COPY mesh/requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt \
    && useradd --system --uid 10002 --user-group --home-dir /data mesh \
    && mkdir -p /data && chown mesh:mesh /data
USER 10002:10002
EXPOSE 8700
CMD ["uvicorn", "mesh_sandbox.api:app", "--host", "0.0.0.0", "--port", "8700", "--log-level", "warning"]
