/* Prints the layout of the nvml.h structs pynvml passes to the simulator: "struct field offset size". */
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>
#include <stddef.h>
#include <stdio.h>

#define F(type, field) printf(#type " " #field " %zu %zu\n", offsetof(type, field), sizeof(((type *)0)->field))
#define S(type) printf(#type " __size__ 0 %zu\n", sizeof(type))

int main(void) {
    S(nvmlPciInfo_t); F(nvmlPciInfo_t, busIdLegacy); F(nvmlPciInfo_t, domain); F(nvmlPciInfo_t, bus);
    F(nvmlPciInfo_t, device); F(nvmlPciInfo_t, pciDeviceId); F(nvmlPciInfo_t, pciSubSystemId); F(nvmlPciInfo_t, busId);
    S(nvmlMemory_t); F(nvmlMemory_t, total); F(nvmlMemory_t, free); F(nvmlMemory_t, used);
    S(nvmlEventData_t); F(nvmlEventData_t, device); F(nvmlEventData_t, eventType); F(nvmlEventData_t, eventData);
    F(nvmlEventData_t, gpuInstanceId); F(nvmlEventData_t, computeInstanceId);
    S(nvmlProcessInfo_t); F(nvmlProcessInfo_t, pid); F(nvmlProcessInfo_t, usedGpuMemory);
    F(nvmlProcessInfo_t, gpuInstanceId); F(nvmlProcessInfo_t, computeInstanceId);
    S(nvmlGpuFabricInfo_t); F(nvmlGpuFabricInfo_t, clusterUuid); F(nvmlGpuFabricInfo_t, status);
    F(nvmlGpuFabricInfo_t, cliqueId); F(nvmlGpuFabricInfo_t, state);
    return 0;
}
