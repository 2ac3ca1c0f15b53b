/* Shared between the loader (registry.c) and the runner (host.c). */
#ifndef DF_PLUGINS_INTERNAL_H
#define DF_PLUGINS_INTERNAL_H

#include "registry.h"

/* One registered sampler: the descriptor's fields copied (the options array
 * is borrowed from the plugin, which stays loaded while the registry lives). */
typedef struct df_sampler_entry {
    df_sampler_info info;
    df_sample_fn sample;
    void *user;
} df_sampler_entry;

/* host->register_sampler (registry.c). */
DF_INTERNAL int df_registry_register_sampler(df_plugin_registrar *reg, const df_sampler_desc *desc);

/* The host table handed to every plugin. */
DF_INTERNAL const df_host_api *df_host_api_table(void);

/* Tests: run the host arithmetic through the generic (any-backend) path
 * built from core ops even on the CPU, where a direct loop is used otherwise. */
DF_INTERNAL void df_host_force_generic_ops(int on);

#endif
