--[[
 AOFlagger strategy for DSA-110 observations: a few dozen integrations of 12.9 s, hundreds of
 channels, a bright drifting sky. It follows the structure of AOFlagger's default strategy
 (A. Offringa, "generic-default.lua", 2021-03-30): iterated SumThreshold on the amplitude
 residual from a low-pass fit, with per-timestep and per-channel rms thresholds. It differs in
 the fit: no time downsampling and short smoothing kernels (3 integrations, 9 channels), so
 that a source drifting through the beam within one observation is fitted rather than flagged.
 bench/flagging.py measures it against the default strategy and CASA's tfcrop and rflag.
]]
aoflagger.require_min_version("3.0")

function execute(input)
  local base_threshold = 1.0 -- lower means more sensitive detection
  local iteration_count = 3
  local threshold_factor_step = 2.0
  local time_kernel, time_sigma = 3, 0.75 -- integrations
  local freq_kernel, freq_sigma = 9, 1.5 -- channels

  for _, polarization in ipairs(input:get_polarizations()) do
    local data = input:convert_to_polarization(polarization):convert_to_complex("amplitude")
    local original = data:copy()
    for i = 1, iteration_count - 1 do
      local level = threshold_factor_step ^ (iteration_count - i) * base_threshold
      aoflagger.sumthreshold_masked(data, original, level, level, true, true)
      local per_channel = data:copy()
      aoflagger.threshold_timestep_rms(data, 3.5)
      aoflagger.threshold_channel_rms(per_channel, 3.0 * threshold_factor_step ^ (iteration_count - i), true)
      data:join_mask(per_channel)
      data:set_visibilities(original)
      data:join_mask(original)
      aoflagger.low_pass_filter(data, time_kernel, freq_kernel, time_sigma, freq_sigma)
      local residual = original - data
      residual:set_mask(data)
      data = residual
    end
    aoflagger.sumthreshold_masked(data, original, base_threshold, base_threshold, true, true)
    data:join_mask(original)
    if input:is_complex() then
      data = data:convert_to_complex("complex")
    end
    input:set_polarization_data(polarization, data)
  end
  input:flag_nans()
end
