// Recurrent gate kernels, scalar variant: compiled with this ISA's flags only.
#include "cpu/simd/scalar.h"
#include "cpu/recurrent/recurrent_impl.h"

namespace minidnn::cpu {

const RecurrentKernels& recurrent_kernels_scalar() {
  static const RecurrentKernels table{
      lstm_forward<ScalarOps>,
      lstm_forward_units<ScalarOps>,
      lstm_backward<ScalarOps>,
      lstm_backward_units<ScalarOps>,
      gru_forward<ScalarOps>,
      gru_reset<ScalarOps>,
      gru_forward_units<ScalarOps>,
      gru_reset_units<ScalarOps>,
      gru_backward<ScalarOps>,
      gru_backward_reset<ScalarOps>,
      gru_backward_units<ScalarOps>,
      gru_backward_reset_units<ScalarOps>,
      rnn_forward<ScalarOps>,
      rnn_forward_units<ScalarOps>,
      rnn_backward<ScalarOps>,
      rnn_backward_units<ScalarOps>,
  };
  return table;
}

}  // namespace minidnn::cpu
