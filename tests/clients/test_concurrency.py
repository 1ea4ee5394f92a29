"""Several producers on one partition at once, each on its own connection: the log interleaves
them, but offsets stay dense, each producer's records keep their order, and every offset a
producer was given holds that producer's record."""

from __future__ import annotations

import threading

from clients import (
    ConfluentProducer,
    KafkaPythonProducer,
    Record,
    all_delivered,
    consume_all,
    create_topic,
)

PER_PRODUCER = 1500


def test_concurrent_producers_on_one_partition(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    makers = [ConfluentProducer, ConfluentProducer, KafkaPythonProducer]
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            producer = makers[index](broker.bootstrap, codec="gzip" if index == 1 else "none")
            try:
                records = [
                    Record(b"p%d-%06d" % (index, i), partition=0) for i in range(PER_PRODUCER)
                ]
                results[index] = list(
                    zip(records, all_delivered(producer.send_all(topic_name, records)))
                )
            finally:
                producer.close()
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(makers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(results) == list(range(len(makers)))

    total = PER_PRODUCER * len(makers)
    got = consume_all("aiokafka", broker.bootstrap, topic_name, [0], total)
    assert [c.offset for c in got] == list(range(total)), "offsets are not dense"
    at = {c.offset: c.value for c in got}
    for index, pairs in results.items():
        assert all(at[d.offset] == r.value for r, d in pairs), (
            f"producer {index}: an offset holds another record"
        )
        offsets = [d.offset for _, d in pairs]
        assert offsets == sorted(offsets), f"producer {index}: its records were reordered"
