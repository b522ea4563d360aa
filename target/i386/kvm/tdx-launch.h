/*
 * TDX's part of the launch plan (tdx-launch.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef I386_TDX_LAUNCH_H
#define I386_TDX_LAUNCH_H

#include "system/launch-plan.h"

/* The tdx-guest @cgs's LaunchPlanBuildFn: the whole TDX plan. */
bool tdx_build_launch_plan(Object *cgs, LaunchPlan *plan, Error **errp);

#endif
