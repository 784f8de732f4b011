/**
 * The IAM resource ARNs of an MSK cluster's topics and consumer groups, derived from the cluster's
 * ARN (a parameter, or the `Arn` of the stack's own cluster: so with Fn::Split / Fn::Select at
 * deploy time):
 * cluster `arn:P:kafka:R:A:cluster/NAME/UUID` → topic `arn:P:kafka:R:A:topic/NAME/UUID/<topic>`,
 * group `arn:P:kafka:R:A:group/NAME/UUID/<group>`. Wildcards only ever in the last part.
 */
import { Fn } from 'aws-cdk-lib';

export class MskArns {
  readonly cluster: string;
  /** `arn:P:kafka:R:A` */
  readonly #base: string;
  /** `NAME/UUID` */
  readonly #id: string;

  constructor(clusterArn: string) {
    this.cluster = clusterArn;
    // `arn:P:kafka:R:A` and `NAME/UUID`, on either side of the resource type.
    const parts = Fn.split(':cluster/', clusterArn);
    this.#base = Fn.select(0, parts);
    this.#id = Fn.select(1, parts);
  }

  /** A topic's ARN; `name` may end in `*` (`ingress.*`: every ingress topic). */
  topic(name: string): string {
    return Fn.join('', [this.#base, ':topic/', this.#id, '/', name]);
  }

  /** A consumer group's ARN; `name` may end in `*`. */
  group(name: string): string {
    return Fn.join('', [this.#base, ':group/', this.#id, '/', name]);
  }
}
