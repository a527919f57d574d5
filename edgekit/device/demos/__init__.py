"""Demos that run on the device from a bundle: the camera demo (and, later, the microphone demo).

Device side: numpy, OpenCV and a runtime. Never torch.
"""
