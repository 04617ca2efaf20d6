/* neuronbus.h: the whole public core API in one include. */
#ifndef NEURONBUS_H
#define NEURONBUS_H

#define NB_VERSION_MAJOR 0
#define NB_VERSION_MINOR 1
#define NB_VERSION_PATCH 0
#define NB_VERSION_STRING "0.1.0"

#include "nb_err.h"
#include "nb_clock.h"
#include "nb_spike.h"
#include "nb_wait.h"
#include "nb_axon.h"
#include "nb_arena.h"
#include "nb_synapse.h"
#include "nb_neuron.h"
#include "nb_cortex.h"
#include "nb_frame.h"

#endif
