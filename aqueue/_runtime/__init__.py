"""The worker's services: scheduler, executor, completer, notifier, heartbeat, maintenance."""
