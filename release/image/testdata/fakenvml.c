/*
 * A stand-in for the NVIDIA driver's libnvidia-ml.so.1, linked as the
 * driver's is against libc, libm, libdl, libpthread and librt: the agent
 * image's test puts it where the NVIDIA container toolkit mounts the
 * driver's libraries and checks that the agent in the image loads it.
 * Its nvmlInit_v2 answers that no driver is loaded, so the agent stops
 * with this library's own message.
 */

#define NVML_ERROR_DRIVER_NOT_LOADED 9

int nvmlInit_v2(void) { return NVML_ERROR_DRIVER_NOT_LOADED; }

const char *nvmlErrorString(int result) {
	(void)result;
	return "fake NVML: no driver here";
}
