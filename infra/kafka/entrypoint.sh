#!/bin/bash
# The stand-in Kafka image's entrypoint, configured as apache/kafka is: each KAFKA_<NAME>
# variable sets the broker property <name> (lower case; "___" -> "-", "__" -> "_",
# "_" -> "."), over single-node KRaft defaults; CLUSTER_ID names the cluster. The storage
# is formatted on first start only, so a kept volume keeps its topics. KAFKA_HEAP_OPTS and
# KAFKA_OPTS go to the JVM, as in Kafka's own scripts.
set -euo pipefail

declare -A props=(
  [node.id]=1
  [process.roles]=broker,controller
  [listeners]=PLAINTEXT://:9092,CONTROLLER://:9093
  [advertised.listeners]=PLAINTEXT://localhost:9092
  [controller.listener.names]=CONTROLLER
  [controller.quorum.voters]=1@localhost:9093
  [listener.security.protocol.map]=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
  [inter.broker.listener.name]=PLAINTEXT
  [log.dirs]=/var/lib/kafka/data
  [offsets.topic.replication.factor]=1
  [transaction.state.log.replication.factor]=1
  [transaction.state.log.min.isr]=1
  [share.coordinator.state.topic.replication.factor]=1
  [share.coordinator.state.topic.min.isr]=1
  [group.initial.rebalance.delay.ms]=0
)
for var in $(compgen -e); do
  case "$var" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS \
      | KAFKA_GC_LOG_OPTS | KAFKA_JMX_OPTS | KAFKA_DEBUG | KAFKA_VERSION) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  name="${var#KAFKA_}"
  name="${name,,}"
  name="${name//___/-}"
  name="${name//__/@}"
  name="${name//_/.}"
  props["${name//@/_}"]="${!var}"
done

conf="$(mktemp /tmp/server.XXXXXX.properties)"
for key in "${!props[@]}"; do
  printf '%s=%s\n' "$key" "${props[$key]}"
done | sort > "$conf"

java_args=(${KAFKA_HEAP_OPTS:--Xmx512m} -XX:+UseSerialGC -Djava.awt.headless=true
  -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties ${KAFKA_OPTS:-}
  -cp "/opt/kafka/libs/*")
logs="${props[log.dirs]%%,*}"
if [ ! -f "$logs/meta.properties" ]; then
  java "${java_args[@]}" kafka.tools.StorageTool format \
    -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$conf"
fi
exec java "${java_args[@]}" kafka.Kafka "$conf"
