#!/usr/bin/env python3
"""sync_topic_read.py - read a sync topic with kafka-python, a client that
shares no code with librdkafka: one line per record, "offset key round
version slice value-as-hex", to show the records are
well-formed Kafka records with the documented key and headers.
Usage: sync_topic_read.py BOOTSTRAPS TOPIC COUNT"""
import sys

from kafka import KafkaConsumer, TopicPartition

bootstraps, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = KafkaConsumer(bootstrap_servers=bootstraps, enable_auto_commit=False,
                         api_version=(2, 5, 0), consumer_timeout_ms=30000)
tp = TopicPartition(topic, 0)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
seen = 0
for rec in consumer:
    headers = {k: v.decode() for k, v in rec.headers}
    print(rec.offset, rec.key.decode(), headers["streamlr.sync.round"],
          headers["streamlr.sync.version"], headers["streamlr.sync.slice"], rec.value.hex())
    seen += 1
    if seen == count:
        break
consumer.close()
sys.exit(0 if seen == count else 1)
