#!/bin/bash
# apache/kafka's /opt/kafka/bin/kafka-broker-api-versions.sh, for the stand-in image: the
# usual healthcheck of a compose file (exit 0 once the broker answers).
exec java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties \
  -cp "/opt/kafka/libs/*" org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
