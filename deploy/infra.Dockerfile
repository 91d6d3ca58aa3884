# The broker (Tansu) and the S3 store (Garage) for a deployment on one
# machine, on the same base as the job (scripts/image.sh infra).
FROM debian:bookworm-slim
RUN useradd --system --uid 10002 --create-home infra
COPY tansu garage /usr/local/bin/
COPY garage.sh /opt/garage.sh
USER 10002
