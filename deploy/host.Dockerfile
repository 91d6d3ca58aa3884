# The runtime image around a binary built on the host (scripts/image.sh build).
# Its runtime part matches the Dockerfile's runtime stage line for line (the
# container tests check that), so both images behave alike.
FROM debian:bookworm-slim
RUN dpkg -s ca-certificates libssl3 >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/*)
RUN useradd --system --uid 10001 --no-create-home popularity && mkdir /cluster && chown 10001 /cluster
COPY start.sh /usr/local/bin/popularity-start
COPY popularity /usr/local/bin/popularity
USER 10001
EXPOSE 2101 9464
ENTRYPOINT ["popularity"]
CMD ["run"]
