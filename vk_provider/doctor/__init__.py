"""`vk-provider doctor`: pre-flight checks of everything that can stop the daemon from working."""
