package ingest

import "time"

// SetRedisClock makes now the clock of c's larder ingest, for an event's
// time against a host clock that runs behind.
func SetRedisClock(c *RedisConsumer, now func() time.Time) {
	c.mapper = NewMapper(c.Stream)
	c.mapper.now = now
}

// SetKafkaClock is SetRedisClock for a Kafka consumer.
func SetKafkaClock(c *KafkaConsumer, now func() time.Time) {
	c.mapper = NewMapper(c.Stream)
	c.mapper.now = now
}
