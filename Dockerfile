# The vidmusician CLI, review tool and flows on Debian with Python 3.11.
FROM python:3.11-slim-bookworm
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        ffmpeg make git nodejs && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN make install VENV=/opt/venv SUDO= && /opt/venv/bin/pip install -q -c constraints.txt 'psycopg[binary]'
ENV PATH=/opt/venv/bin:$PATH VIDMUSICIAN_ROOT=/data
VOLUME /data
ENTRYPOINT ["vidmusician"]
CMD ["status"]
