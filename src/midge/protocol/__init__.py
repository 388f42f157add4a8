"""Sans-IO MQTT protocol: packets, codec, topic rules. No sockets, no clocks."""
