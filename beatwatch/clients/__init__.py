"""The Kafka client seam: interfaces (``client``), one adapter per library, the factory.

Import the interfaces and the factory from here; the adapters are imported by
the factory only when their library is chosen.
"""

from beatwatch.clients.client import (
    ALERT_PUBLISHER,
    Admin,
    ClientError,
    ClientSettingsError,
    CommitError,
    ConsumedRecord,
    Consumer,
    ConsumerOptions,
    Delivery,
    Outgoing,
    Partition,
    Publisher,
    PublisherOptions,
    PublishError,
    Record,
    SendTimeout,
    TopicsRefused,
    first_offsets,
    next_offsets,
)
from beatwatch.clients.factory import new_admin, new_consumer, new_publisher
from beatwatch.clients.topics import TopicCreationError, ensure_topics

__all__ = [
    "ALERT_PUBLISHER",
    "Admin",
    "ClientError",
    "ClientSettingsError",
    "CommitError",
    "ConsumedRecord",
    "Consumer",
    "ConsumerOptions",
    "Delivery",
    "Outgoing",
    "Partition",
    "PublishError",
    "Publisher",
    "PublisherOptions",
    "Record",
    "SendTimeout",
    "TopicCreationError",
    "TopicsRefused",
    "ensure_topics",
    "first_offsets",
    "new_admin",
    "new_consumer",
    "new_publisher",
    "next_offsets",
]
