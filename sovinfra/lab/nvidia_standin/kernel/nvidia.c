// sovinfra lab stand-in for NVIDIA's kernel module: it drives no hardware. It exists so the driver role's
// real path runs on a VM (DKMS builds it for the running kernel, modprobe loads it, a reboot replaces it)
// and reports its version where NVIDIA's module does: /sys/module/nvidia/version and
// /proc/driver/nvidia/version.
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

#ifndef STANDIN_VERSION
#error "STANDIN_VERSION (the driver version) must be defined by the build"
#endif

static struct proc_dir_entry *driver_dir;

static int version_show(struct seq_file *m, void *v)
{
	seq_printf(m, "NVRM version: NVIDIA UNIX %s Kernel Module for x86_64  %s  Release Build  "
		   "(sovinfra lab stand-in)\nGCC version:  stand-in\n", STANDIN_FLAVOUR, STANDIN_VERSION);
	return 0;
}

static int __init standin_init(void)
{
	driver_dir = proc_mkdir("driver/nvidia", NULL);
	if (!driver_dir)
		return -ENOMEM;
	if (!proc_create_single("version", 0444, driver_dir, version_show)) {
		proc_remove(driver_dir);
		return -ENOMEM;
	}
	return 0;
}

static void __exit standin_exit(void)
{
	proc_remove(driver_dir);
}

module_init(standin_init);
module_exit(standin_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("sovinfra lab stand-in for the NVIDIA kernel module (no hardware)");
MODULE_VERSION(STANDIN_VERSION);
