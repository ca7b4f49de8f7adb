# The brokergate application image: every service in docker-compose.yml runs it with its own command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them; at the versions the tests passed with.
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir -p brokergate common workers beat feed paper bench \
 && python -m pip install -c constraints.txt . \
 && python -m pip uninstall -y brokergate

COPY brokergate ./brokergate
COPY common ./common
COPY workers ./workers
COPY beat ./beat
COPY feed ./feed
COPY paper ./paper
COPY bench ./bench
COPY devtools ./devtools
COPY examples ./examples
COPY accounts.example.toml accounts.compose.toml ./
RUN python -m pip install --no-deps . \
 && useradd --system --uid 10001 --home-dir /app brokergate

# Nothing here needs root; a compromised process should not get it.
USER brokergate

# Each service says what it runs (docker-compose.yml); alone, the image shows the CLI.
CMD ["brokergate", "--help"]
