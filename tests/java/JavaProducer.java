// The real Java KafkaProducer, for tests/real_clients.py: run as a single source file
// (Java 17, no build step) with the kafka-clients jar on the class path:
//
//   java -cp '<kafka libs>/*' JavaProducer.java bootstrap.servers=HOST:PORT acks=all ...
//
// Every argument is a producer property (name=value); the client's defaults hold for the
// rest, so the partitioner is Kafka's default (murmur2 of the key). Each line of stdin is
// one message, fields separated by tabs, each base64 ("-" for null):
//
//   topic  key  value  [header-name  header-value]...
//
// The messages are sent in order and flushed. For each, "partition<TAB>offset" is written
// to stdout in the same order; if any is not delivered, the client's error is written to
// stderr and the exit status is 1.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class JavaProducer {
    public static void main(String[] args) throws Exception {
        // Our results alone on stdout: the client's logging (log4j's console appender
        // takes System.out when it starts) goes to stderr with the errors.
        PrintStream results = System.out;
        System.setOut(System.err);

        Properties properties = new Properties();
        for (String arg : args) {
            int equals = arg.indexOf('=');
            properties.put(arg.substring(0, equals), arg.substring(equals + 1));
        }
        properties.put("key.serializer", ByteArraySerializer.class.getName());
        properties.put("value.serializer", ByteArraySerializer.class.getName());

        List<Future<RecordMetadata>> sent = new ArrayList<>();
        int failed = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(properties)) {
            BufferedReader lines =
                    new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = lines.readLine()) != null) {
                if (!line.isEmpty()) {
                    sent.add(producer.send(record(line.split("\t", -1))));
                }
            }
            producer.flush();
            for (int n = 0; n < sent.size(); n++) {
                try {
                    RecordMetadata metadata = sent.get(n).get();
                    results.println(metadata.partition() + "\t" + metadata.offset());
                } catch (ExecutionException error) {
                    failed++;
                    System.err.println("message " + n + " not delivered: " + error.getCause());
                }
            }
        }
        results.flush();
        System.exit(failed == 0 ? 0 : 1);
    }

    private static ProducerRecord<byte[], byte[]> record(String[] fields) {
        String topic = new String(decode(fields[0]), StandardCharsets.UTF_8);
        ProducerRecord<byte[], byte[]> record =
                new ProducerRecord<>(topic, decode(fields[1]), decode(fields[2]));
        for (int n = 3; n + 1 < fields.length; n += 2) {
            String name = new String(decode(fields[n]), StandardCharsets.UTF_8);
            record.headers().add(new RecordHeader(name, decode(fields[n + 1])));
        }
        return record;
    }

    private static byte[] decode(String field) {
        return field.equals("-") ? null : Base64.getDecoder().decode(field);
    }
}
