# The two images of scalable-chat, from the one Cargo workspace:
#
#   docker build --target chat-server   -t ghcr.io/scalable-chat/chat-server:0.1.0 .
#   docker build --target chat-operator -t ghcr.io/scalable-chat/chat-operator:0.1.0 .
#
# Caching: cargo-chef turns Cargo.lock and the crates' manifests into a recipe and compiles the
# dependencies of one package from it ("cook") in a layer of their own. Editing source leaves
# that layer cached, so a rebuild compiles only the workspace's own crates. Each image cooks
# only its own package's dependencies: the operator never compiles mongodb or rdkafka.
#
# PROFILE=dev (the Tiltfile's default) compiles faster; the images people deploy use release.
#
# Both run as uid/gid 10001 with nothing to write outside /tmp, so a read-only root filesystem
# works (the operator mounts an emptyDir on /tmp for chat-server).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
# Nothing to install: the bundled librdkafka and SQLite need only the C compiler and `make`
# this image has (no CMake, no libcurl headers).
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# One builder per binary: cook its dependencies, then build it. (Two stages rather than one
# with a PACKAGE argument, because build arguments are global to a build.)
FROM chef AS build-chat-server
ARG PROFILE=release
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --locked --profile "$PROFILE" --recipe-path recipe.json --package chat-server
COPY . .
RUN cargo build --locked --profile "$PROFILE" --package chat-server --bin chat-server \
 && install -D "target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/chat-server" /out/chat-server

FROM chef AS build-chat-operator
ARG PROFILE=release
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --locked --profile "$PROFILE" --recipe-path recipe.json --package chat-operator
COPY . .
RUN cargo build --locked --profile "$PROFILE" --package chat-operator --bin chat-operator \
 && install -D "target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/chat-operator" /out/chat-operator

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 chat \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin chat

FROM runtime AS chat-operator
COPY --from=build-chat-operator /out/chat-operator /usr/local/bin/chat-operator
# Fail the build, not the pod, when a shared library is missing.
RUN ! ldd /usr/local/bin/chat-operator | grep 'not found'
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/chat-operator"]
CMD ["run"]

FROM runtime AS chat-server
# librdkafka (bundled by rdkafka) links libcurl.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcurl4 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-chat-server /out/chat-server /usr/local/bin/chat-server
RUN ! ldd /usr/local/bin/chat-server | grep 'not found'
USER 10001:10001
ENV PORT=8080
EXPOSE 8080
# The role is the argument: gateway, auth, chat, group, message, all or migrate.
ENTRYPOINT ["/usr/local/bin/chat-server"]
CMD ["all"]
