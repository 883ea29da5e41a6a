"""The distributed runtime: a Kafka worker (aiokafka) around the same core as `run`.

Importing this package needs no Kafka client; the modules that talk to
brokers import aiokafka themselves.
"""

from soc_agent.settings.kafka import InputTopic, KafkaConfig, TopicLayout, TopicsConfig

__all__ = ["InputTopic", "KafkaConfig", "TopicLayout", "TopicsConfig"]
