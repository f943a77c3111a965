# The zoo image: the `zoo` CLI plus Ray, used by the Ray head, the Ray workers, `zoo init` and
# the team server (`zoo server`; `zoo serve` deploys from it too).
# CPU torch by default; for the GPU worker build with a CUDA wheel index, e.g.
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# (the CUDA runtime ships inside the torch wheel; the host needs only the NVIDIA driver and the
# container toolkit that `deploy.resources.reservations.devices` in docker-compose.yml uses).
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ZOO_HOME=/var/lib/zoo

RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

WORKDIR /opt/adapter-zoo
# Dependencies first (cached layer), then the code.
COPY pyproject.toml README.md ./
COPY zoo ./zoo
COPY storage ./storage
COPY workers ./workers
COPY cli ./cli
COPY server ./server
RUN pip install ".[demo,server,serve]" && zoo --version

RUN useradd --create-home --uid 1000 zoo && mkdir -p /var/lib/zoo && chown zoo /var/lib/zoo
USER zoo
VOLUME ["/var/lib/zoo"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["zoo", "--help"]
