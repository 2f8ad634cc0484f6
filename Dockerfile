# Image Studio. `docker build -t image-studio .` on the official Python image, or, where no image
# registry is reachable, on a Debian stand-in built from Debian's packages:
#   docker/build-base.sh && docker build --build-arg BASE_IMAGE=studio-base:local -t image-studio .
# Either base must give `python` and `pip` on PATH (Python 3.11). .ci/run builds and runs this file
# (docker/verify.py).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860 GRADIO_ANALYTICS_ENABLED=False \
    DATA_DIR=/data

WORKDIR /app
# Exact versions, every file checked against its hash (see README: dependencies).
COPY requirements.lock .
RUN pip install --no-deps --require-hashes -r requirements.lock

# The code is root's and read-only for the app; it writes only under DATA_DIR (and /tmp).
COPY . .
RUN useradd --create-home --uid 1000 --user-group studio && mkdir -p /data && chown studio:studio /data
USER studio
VOLUME ["/data"]
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, sys, urllib.request; port = os.environ.get('GRADIO_SERVER_PORT', '7860'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"

CMD ["python", "app.py"]
