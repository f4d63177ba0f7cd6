#!/usr/bin/env bash
# Fetches the JVM jars the Spark jobs need on top of pyspark's own (S3A: hadoop-aws + AWS SDK v2 bundle; Delta
# Lake) into .state/jars/spark, through Maven (cached in ~/.m2). Versions come from the installed pyspark, so a
# pyspark upgrade re-fetches matching jars. Idempotent: a stamp records what was fetched.
# Jars pyspark already ships (hadoop-client-*, parquet, jackson, log4j...) are dropped: pyspark's copies win.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE_DIR:-.state}
PY=${PYTHON_BIN:-$STATE/venv/bin/python}
# Delta's Maven release can lag its PyPI release by a patch version, so the JVM side has its own version.
DELTA_JVM_VERSION=${DELTA_JVM_VERSION:-4.4.0}
out="$STATE/jars/spark"

pyspark_jars=$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
spark_binary=$("$PY" -c 'import pyspark; print(".".join(pyspark.__version__.split(".")[:2]))')
hadoop_jar=$(ls "$pyspark_jars"/hadoop-client-api-*.jar)
hadoop_version=$(basename "$hadoop_jar" .jar); hadoop_version=${hadoop_version#hadoop-client-api-}
wanted="hadoop=$hadoop_version spark=$spark_binary delta=$DELTA_JVM_VERSION"

if [ -f "$out/.fetched" ] && [ "$(cat "$out/.fetched")" = "$wanted" ]; then
  exit 0
fi
command -v mvn >/dev/null || { echo "[spark-jars] mvn not found: apt-get install -y maven" >&2; exit 1; }
echo "[spark-jars] fetching hadoop-aws $hadoop_version + AWS SDK bundle, delta-spark_${spark_binary}_2.13 $DELTA_JVM_VERSION (~650 MB on first run, cached in ~/.m2)"
start=$(date +%s)
rm -rf "$out"; mkdir -p "$out"
out=$(cd "$out" && pwd)  # absolute, whether STATE_DIR is relative (.state) or not (the image's /opt/pipeline)
mvn -B -q -f spark_jobs/pom.xml dependency:copy-dependencies \
  -Dhadoop.version="$hadoop_version" -Dspark.binary.version="$spark_binary" -Ddelta.version="$DELTA_JVM_VERSION" \
  -DincludeScope=runtime -DoutputDirectory="$out"
shipped=$(ls "$pyspark_jars" | sed -E 's/-[0-9][^-]*(-[A-Za-z0-9.]+)?\.jar$//' | sort -u)
for jar in "$out"/*.jar; do
  artifact=$(basename "$jar" | sed -E 's/-[0-9][^-]*(-[A-Za-z0-9.]+)?\.jar$//')
  if grep -qxF "$artifact" <<<"$shipped"; then rm -f "$jar"; fi
done
echo "$wanted" >"$out/.fetched"
echo "[spark-jars] $(ls "$out"/*.jar | wc -l) jars in $out ($(du -sh "$out" | cut -f1)) after $(( $(date +%s) - start )) s"
