# iipsrv-ts in a container: FastCGI on 9000 and plain HTTP on 8080, images read from /images.
#
#   docker build -t iipsrv-ts .
#   docker run -p 9000:9000 -p 8080:8080 -v /srv/images:/images:ro iipsrv-ts
#
# Configuration is by iipsrv's environment variables (README.md, Configuration), e.g.
# `-e URI_MAP="iiif=>IIIF" -e MEMCACHED_SERVERS=memcached:11211`. Any Debian bookworm image with
# Node.js 20 (node and npm on the PATH) can stand in for the base: `--build-arg BASE_IMAGE=...`
# (test/daemon/container.test.ts builds this file on one made by debootstrap).
ARG BASE_IMAGE=node:20-bookworm-slim

# ---- build: compile the TypeScript and the JPEG2000 helpers, then drop the dev dependencies ----
FROM ${BASE_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ libc6-dev libopenjp2-7-dev libopenjph-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/iipsrv
# The dependencies first, in a layer of their own that a change of the sources does not undo (the
# prepare script, which needs the sources, runs below as npm run build).
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY bin ./bin
COPY native ./native
COPY src ./src
# tsc, then native/build.mjs. That never fails on its own, so the image build does when the
# JPEG2000 helpers are missing.
RUN npm run build \
 && test -x build/jp2-decoder && test -x build/jp2-encoder && test -x build/jph-decoder \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf src native tsconfig.json && find dist -name "*.map" -delete

# ---- runtime: Node 20, libopenjp2 and OpenJPH (HTJ2K) for the helpers, opj_decompress as their fallback ----
FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenjp2-7 libopenjp2-tools libopenjph0.9 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 iipsrv \
 && useradd --uid 10001 --gid iipsrv --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin iipsrv \
 && mkdir -p /images
COPY --from=build /opt/iipsrv /opt/iipsrv
RUN ln -s /opt/iipsrv/bin/iipsrv /usr/local/bin/iipsrv \
 && iipsrv --version

# The same variables as iipsrv; these few differ from its defaults for a container: images under
# /images, log to stderr (docker logs), and no memcached unless MEMCACHED_SERVERS names one
# (iipsrv's default, localhost, is the container itself).
ENV NODE_ENV=production \
    FILESYSTEM_PREFIX=/images/ \
    LOGFILE=stderr \
    VERBOSITY=1 \
    MEMCACHED_SERVERS= \
    IIPSRV_HEALTHCHECK_URL=http://127.0.0.1:8080/health

WORKDIR /opt/iipsrv
USER 10001:10001
# 9000: FastCGI (nginx fastcgi_pass, examples/nginx); 8080: plain HTTP.
EXPOSE 9000 8080

# The server's own health answer over HTTP: 200 while the image folder is readable, 503 when it is
# not (memcached's state is reported, never a failure). Started with a CMD without --http, set
# IIPSRV_HEALTHCHECK_URL accordingly (any FastCGI front end's URL ending in ?HEALTH) or run with
# --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.IIPSRV_HEALTHCHECK_URL).then(async (r) => process.exit(r.ok && (await r.json()).status === 'ok' ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["iipsrv"]
CMD ["--bind", "0.0.0.0:9000", "--http", "0.0.0.0:8080"]
