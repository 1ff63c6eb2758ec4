export { ShmError, type ShmErrorCode } from './errors.js'
export {
  type CreateOptions,
  type FromFdOptions,
  MAX_SEGMENT_SIZE,
  type OpenNamedOptions,
  type SealName,
  Segment,
} from './segment.js'
