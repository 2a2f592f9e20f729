"""vk-eci: a virtual-kubelet provider that runs Kubernetes pods as Alibaba Cloud ECI container groups."""

__version__ = "0.1.0"
