"""NVML through ctypes, as NVIDIA's tools read it (shared by the stand-in nvidia-smi and nvidia-ctk)."""

import ctypes


class NVMLError(Exception):
    pass


class NVML:
    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        except OSError as exc:
            raise NVMLError(f"NVML Shared Library Not Found: {exc}") from exc
        self._call("nvmlInit_v2")

    def _call(self, name: str, *args: object) -> None:
        rc = getattr(self.lib, name)(*args)
        if rc != 0:
            self.lib.nvmlErrorString.restype = ctypes.c_char_p
            try:
                text = self.lib.nvmlErrorString(rc).decode()
            except AttributeError:
                text = f"NVML error {rc}"
            raise NVMLError(f"{name}: {text}")

    def _text(self, name: str, *args: object) -> str:
        buf = ctypes.create_string_buffer(96)
        self._call(name, *args, buf, ctypes.c_uint(96))
        return buf.value.decode()

    def driver_version(self) -> str:
        return self._text("nvmlSystemGetDriverVersion")

    def gpus(self) -> list[dict]:
        count = ctypes.c_uint()
        self._call("nvmlDeviceGetCount_v2", ctypes.byref(count))
        out = []
        for i in range(count.value):
            handle = ctypes.c_void_p()
            self._call("nvmlDeviceGetHandleByIndex_v2", ctypes.c_uint(i), ctypes.byref(handle))
            out.append(
                {
                    "index": i,
                    "name": self._text("nvmlDeviceGetName", handle),
                    "uuid": self._text("nvmlDeviceGetUUID", handle),
                    "serial": self._text("nvmlDeviceGetSerial", handle),
                }
            )
        return out

    def close(self) -> None:
        self.lib.nvmlShutdown()
