import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from beatwatch import cli
from beatwatch.clients import ensure_topics
from beatwatch.kafka import KafkaSettings


def test_embedded_broker_round_trips_messages_over_tcp(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}-roundtrip"
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    ensure_topics(settings, {topic: 3})
    producer = KafkaProducer(**settings.client_kwargs())
    for i in range(30):
        producer.send(topic, key=f"k{i % 5}".encode(), value=str(i).encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(**settings.client_kwargs(), auto_offset_reset="earliest")
    partitions = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(partitions)
    seen: list[int] = []
    deadline = time.monotonic() + 20
    while len(seen) < 30 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend(int(r.value) for r in records)
    consumer.close()
    assert sorted(seen) == list(range(30))


def test_ensure_topics_creates_requested_partition_count(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}-parts"
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    ensure_topics(settings, {topic: 4})
    ensure_topics(settings, {topic: 4})  # idempotent
    consumer = KafkaConsumer(**settings.client_kwargs())
    deadline = time.monotonic() + 10
    partitions = None
    while not partitions and time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic)
        time.sleep(0.1)
    consumer.close()
    assert partitions == {0, 1, 2, 3}


def test_produce_creates_its_topic_with_the_replication_factor_asked_for(
    kafka_bootstrap, topic_prefix, tmp_path
):
    from kafka.admin import KafkaAdminClient

    csv = tmp_path / "vectors.csv"
    csv.write_text("".join(f"{i},{i + 1},{i + 2},1\n" for i in range(10)))
    topic = f"{topic_prefix}-replicated"
    argv = [
        "produce",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--beats-topic",
        topic,
        "--data",
        str(csv),
        "--rate",
        "0",
        "--progress-interval-s",
        "0",
        "--partitions",
        "2",
        "--replication-factor",
        "3",
    ]
    assert cli.main(argv) == 0
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    # tansu is one node: it records the factor by listing that node three times.
    assert sorted(len(p["replica_nodes"]) for p in described["partitions"]) == [3, 3]
