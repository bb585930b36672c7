"""Sinks that send traces elsewhere: a log file (here), OTLP and Zipkin."""
