#!/bin/bash
# Runs once, when the influxdb:2 image sets up a fresh instance (DOCKER_INFLUXDB_INIT_MODE=setup).
# The hub and Grafana speak InfluxQL over the v1 API (/write, /query?db=hub): map database
# "hub" / retention policy "autogen" to the initial bucket explicitly. InfluxDB >= 2.2 also
# has a virtual mapping bucket-name/autogen; the explicit one survives a bucket rename and
# shows up in `influx v1 dbrp list`.
set -euo pipefail
if influx v1 dbrp list --org "${DOCKER_INFLUXDB_INIT_ORG}" --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
    | grep -q "${DOCKER_INFLUXDB_INIT_BUCKET_ID}"; then
  echo "DBRP mapping for ${DOCKER_INFLUXDB_INIT_BUCKET} exists"
  exit 0
fi
influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --default
