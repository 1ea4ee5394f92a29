"""The admin calls common tools make (CreateTopics, Metadata, DeleteTopics, DescribeConfigs,
DescribeCluster), and what a newcomer's code does with each library's defaults."""

from __future__ import annotations

import asyncio

import pytest

from clients import REQUEST_TIMEOUT_MS, confluent_common

TIMEOUT_S = REQUEST_TIMEOUT_MS / 1000


def test_confluent_admin_round_trip(broker, topic_name):
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

    admin = AdminClient(confluent_common(broker.bootstrap))
    # Per-topic configs at creation are covered by test_limits; this is the plain call.
    admin.create_topics(
        [NewTopic(topic_name, num_partitions=3, replication_factor=1)], request_timeout=TIMEOUT_S
    )[topic_name].result(TIMEOUT_S)

    listed = admin.list_topics(timeout=TIMEOUT_S)
    assert topic_name in listed.topics
    assert sorted(listed.topics[topic_name].partitions) == [0, 1, 2]
    assert list(listed.brokers) and all(
        p.leader in listed.brokers for p in listed.topics[topic_name].partitions.values()
    )

    # Creating it again is TOPIC_ALREADY_EXISTS (36).
    from confluent_kafka import KafkaException

    with pytest.raises(KafkaException) as again:
        admin.create_topics([NewTopic(topic_name, 3, 1)], request_timeout=TIMEOUT_S)[
            topic_name
        ].result(TIMEOUT_S)
    assert again.value.args[0].code() == 36, again.value

    resource = ConfigResource(ResourceType.TOPIC, topic_name)
    configs = admin.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result(
        TIMEOUT_S
    )
    # The size limit a producer must respect is one of the configs a topic reports.
    assert int(configs["max.message.bytes"].value) > 0, configs

    cluster = admin.describe_cluster(request_timeout=TIMEOUT_S).result(TIMEOUT_S)
    assert len(cluster.nodes) == 1 and cluster.nodes[0].port == broker.port

    admin.delete_topics([topic_name], request_timeout=TIMEOUT_S)[topic_name].result(TIMEOUT_S)
    assert topic_name not in admin.list_topics(timeout=TIMEOUT_S).topics


def test_kafka_python_admin_round_trip(broker, topic_name):
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(
        bootstrap_servers=broker.bootstrap,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        bootstrap_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])
        assert topic_name in admin.list_topics()
        [described] = admin.describe_topics([topic_name])
        assert len(described["partitions"]) == 2
        admin.delete_topics([topic_name])
        assert topic_name not in admin.list_topics()
    finally:
        admin.close()


def test_aiokafka_admin_round_trip(broker, topic_name):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def go():
        admin = AIOKafkaAdminClient(
            bootstrap_servers=broker.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS
        )
        await admin.start()
        try:
            created = await admin.create_topics(
                [NewTopic(topic_name, num_partitions=2, replication_factor=1)]
            )
            errors = [t[1] for t in created.topic_errors]
            assert errors == [0], f"CreateTopics answered {created}"
            assert topic_name in await admin.list_topics()
            deleted = await admin.delete_topics([topic_name])
            assert [t[1] for t in deleted.topic_error_codes] == [0], (
                f"DeleteTopics answered {deleted}"
            )
            assert topic_name not in await admin.list_topics()
        finally:
            await admin.close()

    asyncio.run(asyncio.wait_for(go(), 30))


# A newcomer's first program: the library's defaults (only the address, and the bounds that keep
# a broken broker from hanging the suite), to a topic nobody created. Kafka creates it on the
# first Metadata request (auto.create.topics.enable defaults to true). kafka-python's defaults
# include idempotence (InitProducerId, producer ids and sequence numbers in every batch).


def test_kafka_python_defaults(broker, topic_name):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        max_block_ms=REQUEST_TIMEOUT_MS,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        delivery_timeout_ms=15000,
    )
    try:
        metas = [producer.send(topic_name, b"hello %d" % i) for i in range(10)]
        producer.flush(20)
        offsets = sorted((m.get(1).partition, m.get(1).offset) for m in metas)
    finally:
        producer.close(5)
    assert offsets == [(0, i) for i in range(10)], offsets

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        consumer.assign([TopicPartition(topic_name, 0)])
        values = []
        for m in consumer:
            values.append(m.value)
            if len(values) == 10:
                break
    finally:
        consumer.close()
    assert values == [b"hello %d" % i for i in range(10)]


def test_aiokafka_defaults(broker, topic_name):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    async def go():
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS
        )
        await producer.start()
        try:
            metas = [await producer.send_and_wait(topic_name, b"hello %d" % i) for i in range(10)]
        finally:
            await producer.stop()
        assert [(m.partition, m.offset) for m in metas] == [(0, i) for i in range(10)]

        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic_name, 0)])
            values = []
            while len(values) < 10:
                m = await consumer.getone()
                values.append(m.value)
        finally:
            await consumer.stop()
        assert values == [b"hello %d" % i for i in range(10)]

    asyncio.run(asyncio.wait_for(go(), 40))


def test_confluent_defaults(broker, topic_name):
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 15000})
    delivered = []
    for i in range(10):
        producer.produce(
            topic_name,
            b"hello %d" % i,
            on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())),
        )
    assert producer.flush(20) == 0
    assert delivered == [(None, 0, i) for i in range(10)], delivered

    # subscribe() needs a group coordinator, which is not part of `rill serve` yet: the
    # consumer is assigned its partition, as the other consumers here are.
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "newcomer", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic_name, 0, OFFSET_BEGINNING)])
        values = []
        for _ in range(100):
            if len(values) == 10:
                break
            m = consumer.poll(0.2)
            if m is not None:
                assert m.error() is None, m.error()
                values.append(m.value())
    finally:
        consumer.close()
    assert values == [b"hello %d" % i for i in range(10)]
