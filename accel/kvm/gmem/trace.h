#include "trace/trace-accel_kvm_gmem.h"
