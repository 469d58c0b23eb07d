// The plugin's log category (LogNeuralRendering), shared by the module and the view extension.
#pragma once

#include "Logging/LogMacros.h"

DECLARE_LOG_CATEGORY_EXTERN(LogNeuralRendering, Log, All);
